//! History brought from another tool: dumps backed up with `backup --time`, then judged by the
//! retention policy by their real dates (`prune --dry-run --at`), against sets computed by hand.

mod support;

use std::collections::BTreeSet;

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use support::cli::{stderr, TestRepo};

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

/// The last Sunday of each month from `first` (year, month) to `last`, inclusive.
fn last_sundays(first: (i32, u32), last: (i32, u32)) -> BTreeSet<NaiveDate> {
    let mut out = BTreeSet::new();
    let (mut y, mut m) = first;
    while (y, m) <= last {
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        let mut d = NaiveDate::from_ymd_opt(ny, nm, 1).unwrap() - Duration::days(1);
        while d.weekday() != Weekday::Sun {
            d -= Duration::days(1);
        }
        out.insert(d);
        (y, m) = (ny, nm);
    }
    out
}

/// The dates of the backups `prune --dry-run --at` keeps, from its JSON plan.
fn kept_at(repo: &TestRepo, at: &str) -> BTreeSet<NaiveDate> {
    let text = repo.ok_text(&["prune", "--dry-run", "--json", "--at", at]);
    let plan: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(plan[0]["policy"], "three-year", "{plan}");
    plan[0]["selection"]["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| !v["reasons"].as_array().unwrap().is_empty())
        .map(|v| {
            let at: chrono::DateTime<chrono::Utc> = v["at"].as_str().unwrap().parse().unwrap();
            at.date_naive()
        })
        .collect()
}

/// A dump every Sunday at 03:00 UTC from 2024-01-07 to 2026-11-29 (152 of them, a tenth through
/// `-- COMMAND`, the rest piped in), imported with the dates they were taken.
#[test]
fn imported_dumps_are_kept_by_the_dates_they_were_taken() {
    let repo = TestRepo::new();
    let mut sundays = Vec::new();
    let mut d = day("2024-01-07");
    while d <= day("2026-11-29") {
        sundays.push(d);
        d += Duration::days(7);
    }
    assert_eq!(sundays.len(), 152);
    for (n, d) in sundays.iter().enumerate() {
        let time = format!("{d} 03:00:00");
        let out = if n % 10 == 0 {
            repo.run(&[
                "backup",
                "--source",
                "app",
                "--time",
                &time,
                "--",
                "printf",
                &format!("dump of {d}"),
            ])
        } else {
            repo.cmd(&["backup", "--stdin", "--source", "app", "--time", &time])
                .write_stdin(format!("dump of {d}"))
                .output()
                .unwrap()
        };
        assert!(out.status.success(), "{time}: {}", stderr(&out));
    }
    // Each is recorded at its time, and says that the time was given.
    let list: serde_json::Value = serde_json::from_str(&repo.ok_text(&["list", "--json"])).unwrap();
    let first = &list.as_array().unwrap()[0];
    assert_eq!(first["started"], "2024-01-07T03:00:00Z", "{first}");
    assert!(first["time_given"]["ran_started"].is_string(), "{first}");
    assert!(repo.ok_text(&["list"]).contains("[time given]"));
    let id = first["id"].as_str().unwrap();
    assert!(id.starts_with("20240107T030000.000Z-"), "{id}");
    assert_eq!(repo.ok_text(&["cat", id]), "dump of 2024-01-07");
    let shown: serde_json::Value =
        serde_json::from_str(&repo.ok_text(&["show", id, "--json"])).unwrap();
    assert_eq!(
        shown["version"], 2,
        "a manifest with a given time is version 2"
    );
    let shown = repo.ok_text(&["show", id]);
    assert!(shown.contains("given (backup --time)"), "{shown}");

    // 2026-12-01, noon. The window (35 days, from 2026-10-27 noon) and daily: 35 hold the five
    // Sundays of November. weekly: 13 covers the ISO weeks from 2026-09-07 on (the current one,
    // from 2026-11-30, has no dump): twelve Sundays. monthly: 36 covers 2023-12 to 2026-12: the
    // last Sunday of each month from 2024-01 to 2026-11. yearly: 3 keeps the last Sundays of
    // 2024, 2025 and 2026 (already kept as December's, or as November 2026's).
    let weekly: BTreeSet<NaiveDate> = [
        "2026-09-13",
        "2026-09-20",
        "2026-09-27",
        "2026-10-04",
        "2026-10-11",
        "2026-10-18",
        "2026-10-25",
        "2026-11-01",
        "2026-11-08",
        "2026-11-15",
        "2026-11-22",
        "2026-11-29",
    ]
    .into_iter()
    .map(day)
    .collect();
    let mut expected = last_sundays((2024, 1), (2026, 11));
    assert_eq!(expected.len(), 35);
    expected.extend(weekly.iter().copied());
    assert_eq!(expected.len(), 44, "three of the weeks end a month");
    assert_eq!(kept_at(&repo, "2026-12-01T12:00:00Z"), expected);

    // Half a year without new dumps: days and weeks keep nothing more; 36 months back from
    // 2027-06 reach 2024-07; the years 2025-2027 keep December 2025's and November 2026's, which
    // the months keep too.
    assert_eq!(
        kept_at(&repo, "2027-06-01T00:00:00Z"),
        last_sundays((2024, 7), (2026, 11))
    );
    // A leap day and a year end on the way: at 2028-02-29 the months reach back to 2025-03.
    assert_eq!(
        kept_at(&repo, "2028-02-29T23:00:00Z"),
        last_sundays((2025, 3), (2026, 11))
    );
    // Three years on, only `last: 1` keeps a dump: the newest.
    assert_eq!(
        kept_at(&repo, "2029-12-01T00:00:00Z"),
        BTreeSet::from([day("2026-11-29")])
    );
    // The look changed nothing.
    assert_eq!(repo.ids().len(), 152);
}

#[test]
fn a_given_time_is_refused_where_it_cannot_be_true() {
    let repo = TestRepo::new();
    let before = repo.snapshot();
    // `backup --stdin --source app ARGS` of one byte.
    let piped = |args: &[&str]| {
        let mut all = vec!["backup", "--stdin", "--source", "app"];
        all.extend_from_slice(args);
        repo.cmd(&all).write_stdin("x").output().unwrap()
    };
    // In the future.
    let out = piped(&["--time", "2999-01-01T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("in the future"), "{}", stderr(&out));
    // Not a time.
    let out = piped(&["--time", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--time"), "{}", stderr(&out));
    // A database source: its backups are physical or dated by its server, and it has a log.
    let config = repo.config(&format!(
        "repository:\n  url: file://{}\n  key_file: {}\nsources:\n  pg: {{ kind: postgres, url: 'postgres://127.0.0.1:1/x' }}\n",
        repo.path().display(),
        repo.key().display()
    ));
    let with_config = |args: &[&str]| {
        repo.bare()
            .arg("--config")
            .arg(&config)
            .args(args)
            .write_stdin("x")
            .output()
            .unwrap()
    };
    let out = with_config(&["backup", "pg", "--time", "2024-01-01 00:00"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("dated by its server"),
        "{}",
        stderr(&out)
    );
    let out = with_config(&[
        "backup",
        "--stdin",
        "--source",
        "pg",
        "--time",
        "2024-01-01 00:00",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pg is a postgres source"),
        "{}",
        stderr(&out)
    );
    // The command form checks before it starts the producer.
    let marker = repo.dir.path().join("ran");
    let out = with_config(&[
        "backup",
        "--source",
        "pg",
        "--time",
        "2024-01-01 00:00",
        "--",
        "touch",
        marker.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!marker.exists(), "the producer ran");
    // --tz without --time.
    let out = piped(&["--tz", "Europe/Berlin"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(repo.snapshot(), before, "a refused backup wrote something");
    // A zone given: the wall-clock time is read in it, and a backup without --time stays version 1.
    let out = piped(&[
        "--time",
        "2025-07-01 12:00",
        "--tz",
        "Europe/Berlin",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(id.starts_with("20250701T100000.000Z-"), "{id}");
    let plain = repo.backup(b"now");
    let shown: serde_json::Value =
        serde_json::from_str(&repo.ok_text(&["show", &plain, "--json"])).unwrap();
    assert_eq!(shown["version"], 1);
    assert!(shown.get("time_given").is_none(), "{shown}");
}
