//! Which backups a policy keeps, and why: a pure function of the backups, the log's unbroken
//! spans, the holds, the policy and the instant it is evaluated at. No store, no clock.
//!
//! The rules, exactly (docs/RETENTION.md says why):
//! - A rule "N periods" (hourly, daily, weekly, monthly, yearly) covers the period holding `now`
//!   and the N-1 calendar periods before it, in the policy's zone; periods without a backup are not
//!   made up for by older ones. In each covered period the newest backup is kept (ties: the larger
//!   id). Days and months are calendar ones, weeks ISO weeks (Monday to Sunday, so 2026 has a week
//!   53), hours wall-clock hours told apart by their offset across a DST change.
//! - Rules are independent: a backup kept by the daily rule may also be the weekly one, and every
//!   rule that keeps it is named.
//! - `last: N` keeps the N newest backups whatever their age.
//! - The point-in-time window keeps the backup recovery of its first instant starts from: the
//!   newest backup replay can start from, at or before `now - window`, from which the log runs
//!   unbroken to its end. When
//!   there is none (the log has a hole inside the window, or the source is younger), the window is
//!   shorter, and its first restorable instant says so. For a source without a log (stream
//!   backups) every backup inside the window is kept: they are its only restorable points.
//! - Nothing younger than `min_age`, nothing held, and nothing taken after `now` is deleted.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use serde::Serialize;

use super::policy::{Policy, Span};
use crate::repo::manifest::BackupId;

/// A backup as retention sees it: its id, the instant it restores to (its consistency point),
/// and whether log replay can start from it (a physical backup or a dump with its binlog
/// coordinates can; a `pg_dump` or a piped stream cannot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: BackupId,
    pub at: DateTime<Utc>,
    pub replayable: bool,
}

/// A hold on a backup: kept, whatever the policy says, until `until` (or for good).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hold {
    pub backup: BackupId,
    pub reason: String,
    pub until: Option<DateTime<Utc>>,
}

/// An unbroken stretch of the source's log, in time: any instant in it can be reached by replay
/// from a backup taken inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSpan {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The period rules, finest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

/// Why a backup is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "why")]
pub enum Reason {
    /// The newest backup of `period` under `rule`.
    Rule { rule: Rule, period: String },
    /// Recovery of the point-in-time window's first instant starts from it.
    Window,
    /// A source without a log: a restorable point inside the window.
    InWindow,
    /// Younger than the policy's minimum age.
    MinAge,
    Held {
        reason: String,
        until: Option<DateTime<Utc>>,
    },
    /// Taken after the instant the policy is evaluated at.
    AfterNow,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Rule {
                rule: Rule::Last, ..
            } => f.write_str("last"),
            Reason::Rule { rule, period } => {
                let rule = match rule {
                    Rule::Last => "last",
                    Rule::Hourly => "hourly",
                    Rule::Daily => "daily",
                    Rule::Weekly => "weekly",
                    Rule::Monthly => "monthly",
                    Rule::Yearly => "yearly",
                };
                write!(f, "{rule} {period}")
            }
            Reason::Window => f.write_str("point-in-time window base"),
            Reason::InWindow => f.write_str("inside the window"),
            Reason::MinAge => f.write_str("younger than min_age"),
            Reason::Held {
                reason,
                until: Some(u),
            } => write!(f, "held ({reason}) until {}", u.to_rfc3339()),
            Reason::Held {
                reason,
                until: None,
            } => write!(f, "held ({reason})"),
            Reason::AfterNow => f.write_str("taken after the instant evaluated"),
        }
    }
}

/// One backup's fate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub id: BackupId,
    pub at: DateTime<Utc>,
    /// Every reason it is kept; none: it is deleted.
    pub reasons: Vec<Reason>,
}

impl Verdict {
    pub fn kept(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// The point-in-time window as the backups and the log allow it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Window {
    /// `now - point_in_time`, in the policy's calendar.
    pub requested_from: DateTime<Utc>,
    /// The backup recovery starts from, for the window's first instant.
    pub base: Option<BackupId>,
    /// The first instant that can be restored: `requested_from`, or later when the backups or the
    /// log do not reach back that far; `None` when no instant of the window can be restored.
    pub first_restorable: Option<DateTime<Utc>>,
    /// Every instant from `first_restorable` to the log's end (true), or only the backups' own
    /// points (false: a source without a log).
    pub continuous: bool,
}

/// What a policy keeps of one source's backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selection {
    pub now: DateTime<Utc>,
    /// Oldest first.
    pub verdicts: Vec<Verdict>,
    pub window: Option<Window>,
}

impl Selection {
    pub fn kept(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| v.kept())
    }

    pub fn deleted(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| !v.kept())
    }
}

/// The reasons gathered so far, per backup.
#[derive(Default)]
struct Reasons(BTreeMap<BackupId, Vec<Reason>>);

impl Reasons {
    fn add(&mut self, id: &BackupId, reason: Reason) {
        let entry = self.0.entry(id.clone()).or_default();
        if !entry.contains(&reason) {
            entry.push(reason);
        }
    }
}

/// `at` minus `span`, counted in `zone`'s calendar: a day back is the same wall-clock time the
/// day before (23 or 25 hours across a DST change).
pub fn minus(at: DateTime<Utc>, span: Span, zone: chrono_tz::Tz) -> DateTime<Utc> {
    let days = match span {
        Span::Hours(h) => return at - Duration::hours(i64::from(h)),
        Span::Days(d) => d,
        Span::Weeks(w) => w.saturating_mul(7),
    };
    let local = at.with_timezone(&zone).naive_local() - Duration::days(i64::from(days));
    match zone.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => t.to_utc(),
        // The wall-clock time happened twice: the earlier, so the span is never short.
        chrono::LocalResult::Ambiguous(a, _) => a.to_utc(),
        // It did not happen (clocks went forward): the instant the clocks jumped to.
        chrono::LocalResult::None => {
            let later = local + Duration::hours(1);
            zone.from_local_datetime(&later)
                .earliest()
                .map_or(at - Duration::days(i64::from(days)), |t| t.to_utc())
        }
    }
}

/// A period key and its label, for a rule.
fn period(rule: Rule, at: DateTime<Utc>, now: DateTime<Utc>, zone: chrono_tz::Tz) -> (i64, String) {
    let local = at.with_timezone(&zone);
    let date = local.date_naive();
    match rule {
        Rule::Last => (0, String::new()),
        Rule::Hourly => {
            let now_local = now.with_timezone(&zone);
            let hour_start = now
                - Duration::minutes(i64::from(now_local.minute()))
                - Duration::seconds(i64::from(now_local.second()))
                - Duration::nanoseconds(i64::from(now_local.nanosecond() % 1_000_000_000));
            let key = (at - hour_start).num_seconds().div_euclid(3600);
            // The hour's start as an instant (a wall-clock time at a DST change may be two).
            let start = at
                - Duration::minutes(i64::from(local.minute()))
                - Duration::seconds(i64::from(local.second()))
                - Duration::nanoseconds(i64::from(local.nanosecond() % 1_000_000_000));
            let label = start
                .with_timezone(&zone)
                .format("%Y-%m-%dT%H:%M%:z")
                .to_string();
            (key, label)
        }
        Rule::Daily => (days_from_ce(date), date.format("%Y-%m-%d").to_string()),
        Rule::Weekly => {
            let week = date.iso_week();
            // Monday of the ISO week, as a day number: weeks count in sevens.
            let monday = days_from_ce(date) - i64::from(date.weekday().num_days_from_monday());
            (monday / 7, format!("{}-W{:02}", week.year(), week.week()))
        }
        Rule::Monthly => (
            i64::from(date.year()) * 12 + i64::from(date.month0()),
            format!("{}-{:02}", date.year(), date.month()),
        ),
        Rule::Yearly => (i64::from(date.year()), format!("{}", date.year())),
    }
}

fn days_from_ce(date: NaiveDate) -> i64 {
    i64::from(date.num_days_from_ce())
}

/// Applies `policy` at `now` to one source's backups.
pub fn select(
    backups: &[Candidate],
    log: &[LogSpan],
    holds: &[Hold],
    policy: &Policy,
    now: DateTime<Utc>,
) -> Selection {
    let zone = policy.zone;
    let mut order: Vec<&Candidate> = backups.iter().collect();
    order.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    let mut reasons = Reasons::default();
    let past: Vec<&Candidate> = order.iter().copied().filter(|c| c.at <= now).collect();
    for c in order.iter().filter(|c| c.at > now) {
        reasons.add(&c.id, Reason::AfterNow);
    }

    // `last`: the newest N.
    for c in past.iter().rev().take(policy.keep.last as usize) {
        reasons.add(
            &c.id,
            Reason::Rule {
                rule: Rule::Last,
                period: String::new(),
            },
        );
    }
    // The period rules: the newest backup of each of the last N periods.
    let rules = [
        (Rule::Hourly, policy.keep.hourly),
        (Rule::Daily, policy.keep.daily),
        (Rule::Weekly, policy.keep.weekly),
        (Rule::Monthly, policy.keep.monthly),
        (Rule::Yearly, policy.keep.yearly),
    ];
    for (rule, count) in rules {
        if count == 0 {
            continue;
        }
        let (current, _) = period(rule, now, now, zone);
        let oldest = current - i64::from(count) + 1;
        let mut newest_of: BTreeMap<i64, (&Candidate, String)> = BTreeMap::new();
        for c in &past {
            let (key, label) = period(rule, c.at, now, zone);
            if key >= oldest && key <= current {
                // `past` is oldest first: the last one seen in a period is its newest.
                newest_of.insert(key, (c, label));
            }
        }
        for (c, label) in newest_of.into_values() {
            reasons.add(
                &c.id,
                Reason::Rule {
                    rule,
                    period: label,
                },
            );
        }
    }
    // The window.
    let window = policy.point_in_time.map(|span| {
        let requested_from = minus(now, span, zone);
        window_of(&past, log, requested_from, &mut reasons)
    });
    // Minimum age and holds.
    if let Some(age) = policy.min_age {
        let young_after = minus(now, age, zone);
        for c in past.iter().filter(|c| c.at > young_after) {
            reasons.add(&c.id, Reason::MinAge);
        }
    }
    for hold in holds {
        if hold.until.is_none_or(|u| u > now) {
            if let Some(c) = order.iter().find(|c| c.id == hold.backup) {
                reasons.add(
                    &c.id,
                    Reason::Held {
                        reason: hold.reason.clone(),
                        until: hold.until,
                    },
                );
            }
        }
    }
    let verdicts = order
        .iter()
        .map(|c| Verdict {
            id: c.id.clone(),
            at: c.at,
            reasons: reasons.0.get(&c.id).cloned().unwrap_or_default(),
        })
        .collect();
    Selection {
        now,
        verdicts,
        window,
    }
}

/// The window's base backup and first restorable instant.
fn window_of(
    past: &[&Candidate],
    log: &[LogSpan],
    requested_from: DateTime<Utc>,
    reasons: &mut Reasons,
) -> Window {
    if log.is_empty() {
        // No log: each backup is a point of its own.
        let inside: Vec<&&Candidate> = past.iter().filter(|c| c.at >= requested_from).collect();
        for c in &inside {
            reasons.add(&c.id, Reason::InWindow);
        }
        return Window {
            requested_from,
            base: inside.first().map(|c| c.id.clone()),
            first_restorable: inside.first().map(|c| c.at),
            continuous: false,
        };
    }
    // The log's last unbroken span: only a backup inside it reaches the log's end by replay.
    let Some(last) = log.iter().max_by_key(|s| s.to) else {
        return Window {
            requested_from,
            base: None,
            first_restorable: None,
            continuous: true,
        };
    };
    let in_span: Vec<&&Candidate> = past
        .iter()
        .filter(|c| c.replayable && c.at >= last.from && c.at <= last.to)
        .collect();
    let base = in_span
        .iter()
        .rev()
        .find(|c| c.at <= requested_from)
        .or_else(|| in_span.first());
    match base {
        Some(b) => {
            reasons.add(&b.id, Reason::Window);
            Window {
                requested_from,
                base: Some(b.id.clone()),
                first_restorable: Some(b.at.max(requested_from)),
                continuous: true,
            }
        }
        None => Window {
            requested_from,
            base: None,
            first_restorable: None,
            continuous: true,
        },
    }
}

#[cfg(test)]
#[path = "select_tests.rs"]
mod tests;
