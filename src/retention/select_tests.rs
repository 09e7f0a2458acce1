//! The selection on made-up backups, with a simulated clock: the edges computed by hand.

use chrono::{Duration, NaiveDate, TimeZone, Utc};

use super::*;
use crate::retention::policy::{Keep, DEFAULT_POLICY};

fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

fn id(at: DateTime<Utc>, n: u32) -> BackupId {
    format!("{}-{n:08x}", at.format("%Y%m%dT%H%M%S%.3fZ"))
        .parse()
        .unwrap()
}

fn backup(at: DateTime<Utc>) -> Candidate {
    Candidate {
        id: id(at, 1),
        at,
        replayable: true,
    }
}

/// A backup every day at `hour`:00 UTC from `from` to `to`, both included.
fn daily(from: NaiveDate, to: NaiveDate, hour: u32) -> Vec<Candidate> {
    from.iter_days()
        .take_while(|d| *d <= to)
        .map(|d| backup(Utc.from_utc_datetime(&d.and_hms_opt(hour, 0, 0).unwrap())))
        .collect()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn policy(keep: Keep) -> Policy {
    Policy {
        name: "test".into(),
        description: None,
        zone: chrono_tz::UTC,
        point_in_time: None,
        keep,
        min_age: None,
        immutability: None,
        repack_threshold: None,
        audit: Default::default(),
    }
}

fn kept_days(s: &Selection) -> Vec<String> {
    s.kept()
        .map(|v| v.at.format("%Y-%m-%d").to_string())
        .collect()
}

fn reasons_of<'a>(s: &'a Selection, day: &str) -> &'a [Reason] {
    &s.verdicts
        .iter()
        .find(|v| v.at.format("%Y-%m-%d").to_string() == day)
        .unwrap_or_else(|| panic!("no backup on {day}"))
        .reasons
}

fn rule(rule: Rule, period: &str) -> Reason {
    Reason::Rule {
        rule,
        period: period.into(),
    }
}

#[test]
fn three_years_of_daily_backups_under_the_default_policy() {
    let p = Policy::named_or_file(DEFAULT_POLICY).unwrap();
    let backups = daily(date(2025, 12, 1), date(2029, 3, 1), 2);
    let now = utc(2029, 3, 1, 6, 0);
    let log = [LogSpan {
        from: utc(2025, 12, 1, 0, 0),
        to: now,
    }];
    let s = select(&backups, &log, &[], &p, now);
    // 35 dailies (2029-01-26 .. 2029-03-01), 7 more Sundays for the weekly rule, 32 more month
    // ends (2026-04 .. 2028-11), the window's base (2029-01-25); the yearly rule and the minimum
    // age add nothing new.
    assert_eq!(s.kept().count(), 35 + 7 + 32 + 1, "{:?}", kept_days(&s));
    // A leap day ends its month.
    assert_eq!(
        reasons_of(&s, "2028-02-29"),
        [rule(Rule::Monthly, "2028-02")]
    );
    assert!(reasons_of(&s, "2028-02-28").is_empty());
    // Year ends: the monthly and the yearly rule both name it.
    assert_eq!(
        reasons_of(&s, "2027-12-31"),
        [rule(Rule::Monthly, "2027-12"), rule(Rule::Yearly, "2027")]
    );
    assert_eq!(
        reasons_of(&s, "2028-12-31"),
        [
            rule(Rule::Weekly, "2028-W52"),
            rule(Rule::Monthly, "2028-12"),
            rule(Rule::Yearly, "2028")
        ]
    );
    // The 36 months are the current one and the 35 before: 2026-04 is the oldest.
    assert_eq!(
        reasons_of(&s, "2026-04-30"),
        [rule(Rule::Monthly, "2026-04")]
    );
    assert!(reasons_of(&s, "2026-03-31").is_empty());
    assert!(
        reasons_of(&s, "2025-12-31").is_empty(),
        "2025 is not one of the 3 years"
    );
    // The newest: every rule's current period, and younger than a day.
    let newest = reasons_of(&s, "2029-03-01");
    for r in [
        rule(Rule::Last, ""),
        rule(Rule::Daily, "2029-03-01"),
        rule(Rule::Weekly, "2029-W09"),
        rule(Rule::Monthly, "2029-03"),
        rule(Rule::Yearly, "2029"),
        Reason::MinAge,
    ] {
        assert!(newest.contains(&r), "{r:?} not in {newest:?}");
    }
    // The window: 35 days back from 06:00 is 2029-01-25 06:00; recovery starts from that day's
    // 02:00 backup.
    let w = s.window.clone().unwrap();
    assert_eq!(w.requested_from, utc(2029, 1, 25, 6, 0));
    assert_eq!(w.first_restorable, Some(utc(2029, 1, 25, 6, 0)));
    assert!(w.continuous);
    assert_eq!(reasons_of(&s, "2029-01-25"), [Reason::Window]);
    assert!(reasons_of(&s, "2029-01-24").is_empty());
}

#[test]
fn a_hole_in_the_log_inside_the_window_shortens_it_and_says_so() {
    let p = Policy::named_or_file(DEFAULT_POLICY).unwrap();
    let backups = daily(date(2029, 1, 1), date(2029, 3, 1), 2);
    let now = utc(2029, 3, 1, 6, 0);
    let log = [
        LogSpan {
            from: utc(2029, 1, 1, 0, 0),
            to: utc(2029, 2, 10, 0, 0),
        },
        LogSpan {
            from: utc(2029, 2, 10, 12, 0),
            to: now,
        },
    ];
    let s = select(&backups, &log, &[], &p, now);
    let w = s.window.unwrap();
    // No backup before the window reaches the log's end: the first after the hole is the base.
    assert_eq!(w.base, Some(id(utc(2029, 2, 11, 2, 0), 1)));
    assert_eq!(w.first_restorable, Some(utc(2029, 2, 11, 2, 0)));
    // The same source younger than the window: its first backup.
    let young = daily(date(2029, 2, 20), date(2029, 3, 1), 2);
    let s = select(&young, &log, &[], &p, now);
    assert_eq!(
        s.window.unwrap().first_restorable,
        Some(utc(2029, 2, 20, 2, 0))
    );
    // No backup at all inside the log's last span: nothing of the window is restorable.
    let old = daily(date(2029, 1, 1), date(2029, 2, 9), 2);
    let s = select(&old, &log, &[], &p, now);
    assert_eq!(s.window.unwrap().first_restorable, None);
}

#[test]
fn days_and_hours_follow_the_policys_zone_across_dst_changes() {
    let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    let mut p = policy(Keep {
        daily: 2,
        ..Default::default()
    });
    p.zone = berlin;
    // Clocks went forward in Berlin on 2026-03-29 at 02:00 (CET -> CEST).
    let backups = [
        backup(utc(2026, 3, 28, 23, 30)), // Berlin 03-29 00:30 CET
        backup(utc(2026, 3, 29, 21, 0)),  // Berlin 03-29 23:00 CEST
        backup(utc(2026, 3, 29, 22, 30)), // Berlin 03-30 00:30 CEST
        backup(utc(2026, 3, 30, 10, 0)),  // Berlin 03-30 12:00 CEST
    ];
    let s = select(&backups, &[], &[], &p, utc(2026, 3, 30, 12, 0));
    let kept: Vec<_> = s.kept().map(|v| v.at).collect();
    assert_eq!(kept, [utc(2026, 3, 29, 21, 0), utc(2026, 3, 30, 10, 0)]);
    assert_eq!(s.verdicts[1].reasons, [rule(Rule::Daily, "2026-03-29")]);
    // A calendar day back across the change is 23 hours.
    assert_eq!(
        minus(utc(2026, 3, 29, 12, 0), Span::Days(1), berlin),
        utc(2026, 3, 28, 13, 0)
    );
    // Clocks went back on 2026-10-25 at 03:00 (CEST -> CET): 02:00-03:00 happened twice, and
    // the two hours are two periods.
    let mut hourly = policy(Keep {
        hourly: 3,
        ..Default::default()
    });
    hourly.zone = berlin;
    let backups = [
        backup(utc(2026, 10, 25, 0, 10)),
        backup(utc(2026, 10, 25, 0, 50)),
        backup(utc(2026, 10, 25, 1, 10)),
        backup(utc(2026, 10, 25, 1, 20)),
    ];
    let s = select(&backups, &[], &[], &hourly, utc(2026, 10, 25, 1, 30));
    let labels: Vec<_> = s.kept().flat_map(|v| v.reasons.clone()).collect();
    assert_eq!(
        labels,
        [
            rule(Rule::Hourly, "2026-10-25T02:00+02:00"),
            rule(Rule::Hourly, "2026-10-25T02:00+01:00")
        ]
    );
}

#[test]
fn iso_week_53_and_the_year_boundary() {
    let weekly = policy(Keep {
        weekly: 2,
        ..Default::default()
    });
    // 2026 has an ISO week 53: Monday 2026-12-28 to Sunday 2027-01-03.
    let backups = daily(date(2026, 12, 20), date(2027, 1, 2), 2);
    let s = select(&backups, &[], &[], &weekly, utc(2027, 1, 2, 12, 0));
    assert_eq!(kept_days(&s), ["2026-12-27", "2027-01-02"]);
    assert_eq!(
        reasons_of(&s, "2027-01-02"),
        [rule(Rule::Weekly, "2026-W53")]
    );
    assert_eq!(
        reasons_of(&s, "2026-12-27"),
        [rule(Rule::Weekly, "2026-W52")]
    );

    let yearly = policy(Keep {
        yearly: 2,
        ..Default::default()
    });
    let backups = [
        backup(utc(2026, 12, 31, 23, 50)),
        backup(utc(2027, 1, 1, 0, 10)),
        backup(utc(2027, 1, 1, 0, 40)),
    ];
    let s = select(&backups, &[], &[], &yearly, utc(2027, 1, 1, 0, 30));
    assert_eq!(s.verdicts[0].reasons, [rule(Rule::Yearly, "2026")]);
    assert_eq!(s.verdicts[1].reasons, [rule(Rule::Yearly, "2027")]);
    // Taken after the instant evaluated: not the policy's to delete.
    assert_eq!(s.verdicts[2].reasons, [Reason::AfterNow]);
}

#[test]
fn two_backups_in_one_second_keep_the_larger_id() {
    let p = policy(Keep {
        daily: 1,
        ..Default::default()
    });
    let at = utc(2026, 6, 1, 2, 0);
    let backups = [
        Candidate {
            id: id(at, 2),
            at,
            replayable: true,
        },
        Candidate {
            id: id(at, 1),
            at,
            replayable: true,
        },
    ];
    let s = select(&backups, &[], &[], &p, utc(2026, 6, 1, 3, 0));
    let kept: Vec<_> = s.kept().map(|v| v.id.clone()).collect();
    assert_eq!(kept, [id(at, 2)]);
    assert_eq!(s.deleted().count(), 1);
}

#[test]
fn a_month_without_backups_is_not_made_up_for_by_an_older_one() {
    let p = policy(Keep {
        monthly: 36,
        ..Default::default()
    });
    let mut backups = daily(date(2026, 1, 1), date(2029, 3, 1), 2);
    backups.retain(|c| c.at.format("%Y-%m").to_string() != "2028-06");
    let s = select(&backups, &[], &[], &p, utc(2029, 3, 1, 6, 0));
    assert_eq!(s.kept().count(), 35, "36 months, one of them empty");
    assert_eq!(
        reasons_of(&s, "2028-05-31"),
        [rule(Rule::Monthly, "2028-05")]
    );
    assert!(reasons_of(&s, "2028-05-30").is_empty());
    assert!(reasons_of(&s, "2026-03-31").is_empty());
}

#[test]
fn holds_keep_until_they_end_and_min_age_keeps_the_young() {
    let p = policy(Keep {
        last: 1,
        ..Default::default()
    });
    let mut p = p;
    p.min_age = Some(Span::Days(2));
    let backups = daily(date(2026, 1, 1), date(2026, 1, 10), 2);
    let now = utc(2026, 1, 10, 12, 0);
    let holds = [
        Hold {
            backup: id(utc(2026, 1, 2, 2, 0), 1),
            reason: "legal case 42".into(),
            until: None,
        },
        Hold {
            backup: id(utc(2026, 1, 3, 2, 0), 1),
            reason: "audit".into(),
            until: Some(utc(2026, 1, 5, 0, 0)),
        },
    ];
    let s = select(&backups, &[], &holds, &p, now);
    assert_eq!(
        reasons_of(&s, "2026-01-02"),
        [Reason::Held {
            reason: "legal case 42".into(),
            until: None
        }]
    );
    assert!(
        reasons_of(&s, "2026-01-03").is_empty(),
        "the hold has ended"
    );
    // Two calendar days back from 01-10 12:00 is 01-08 12:00: 01-09 and 01-10 are young.
    assert_eq!(reasons_of(&s, "2026-01-09"), [Reason::MinAge]);
    assert!(reasons_of(&s, "2026-01-08").is_empty());
    assert_eq!(s.kept().count(), 3);
}

#[test]
fn a_source_without_a_log_keeps_every_backup_of_its_window() {
    let mut p = policy(Keep {
        monthly: 1,
        ..Default::default()
    });
    p.point_in_time = Some(Span::Days(3));
    let backups = daily(date(2026, 5, 1), date(2026, 5, 20), 2);
    let s = select(&backups, &[], &[], &p, utc(2026, 5, 20, 12, 0));
    // 05-17 12:00 on: 05-18, 05-19, 05-20 (which is also the month's).
    assert_eq!(kept_days(&s), ["2026-05-18", "2026-05-19", "2026-05-20"]);
    let w = s.window.unwrap();
    assert!(!w.continuous);
    assert_eq!(w.first_restorable, Some(utc(2026, 5, 18, 2, 0)));
}

/// Three years and three months, a day at a time: each day a backup is taken and the policy's
/// deletions are carried out. Every day afterwards: the newest backup is there, a backup of each
/// of the last 35 days, of each of the last 36 months and of each of the last 3 years is there,
/// the window's base is, and the number of backups stays bounded.
#[test]
fn the_default_policy_applied_every_day_for_three_years_keeps_its_promise() {
    let p = Policy::named_or_file(DEFAULT_POLICY).unwrap();
    let start = date(2026, 1, 1);
    let mut kept: Vec<Candidate> = Vec::new();
    let mut most = 0;
    for day in start.iter_days().take(365 * 3 + 90) {
        let at = Utc.from_utc_datetime(&day.and_hms_opt(2, 0, 0).unwrap());
        kept.push(backup(at));
        let now = at + Duration::hours(4);
        let log = [LogSpan {
            from: Utc.from_utc_datetime(&start.and_hms_opt(0, 0, 0).unwrap()),
            to: now,
        }];
        let s = select(&kept, &log, &[], &p, now);
        let survivors: Vec<Candidate> = s
            .kept()
            .map(|v| Candidate {
                id: v.id.clone(),
                at: v.at,
                replayable: true,
            })
            .collect();
        kept = survivors;
        most = most.max(kept.len());
        assert_eq!(kept.last().map(|c| c.at), Some(at), "the newest is kept");
        let has = |f: &dyn Fn(&Candidate) -> bool| kept.iter().any(f);
        for back in 0..35.min(day.signed_duration_since(start).num_days() + 1) {
            let d = day - Duration::days(back);
            assert!(has(&|c| c.at.date_naive() == d), "{day}: no backup of {d}");
        }
        for back in 0..36 {
            let month = (day.year() * 12 + day.month0() as i32) - back;
            let (y, m) = (month.div_euclid(12), month.rem_euclid(12) as u32 + 1);
            if date(y, m, 1) < date(start.year(), start.month(), 1) {
                break;
            }
            assert!(
                has(&|c| c.at.year() == y && c.at.month() == m),
                "{day}: no backup of {y}-{m:02}"
            );
        }
        for y in (day.year() - 2)..=day.year() {
            if y >= start.year() {
                assert!(has(&|c| c.at.year() == y), "{day}: no backup of {y}");
            }
        }
        if day - start > Duration::days(36) {
            let w = s.window.unwrap();
            assert_eq!(w.first_restorable, Some(w.requested_from), "{day}");
        }
    }
    assert!(
        most <= 1 + 35 + 13 + 36 + 3 + 1,
        "at most {most} backups were kept"
    );
    assert!(kept.len() >= 70, "{}", kept.len());
}

#[test]
fn the_window_starts_only_from_a_backup_replay_can_start_from() {
    let p = Policy {
        point_in_time: Some(Span::Days(7)),
        ..policy(Keep {
            daily: 1,
            ..Keep::default()
        })
    };
    let now = utc(2026, 6, 30, 12, 0);
    let physical = backup(utc(2026, 6, 20, 1, 0));
    // A pg_dump taken after it, still before the window: no WAL replays from it.
    let dump = Candidate {
        id: id(utc(2026, 6, 22, 1, 0), 2),
        at: utc(2026, 6, 22, 1, 0),
        replayable: false,
    };
    let log = [LogSpan {
        from: utc(2026, 6, 1, 0, 0),
        to: now,
    }];
    let s = select(&[physical.clone(), dump.clone()], &log, &[], &p, now);
    let window = s.window.as_ref().unwrap();
    assert_eq!(window.base, Some(physical.id.clone()));
    assert_eq!(window.first_restorable, Some(utc(2026, 6, 23, 12, 0)));
    assert!(s.verdicts.iter().any(|v| v.id == dump.id && !v.kept()));
}
