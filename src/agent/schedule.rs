//! When a scheduled job runs: a cron expression read in a time zone's wall-clock time, a stable
//! jitter per source and job, and what to do about runs missed while the machine slept. Pure
//! functions of the instant they are asked about: no clock.
//!
//! - **Forms.** Five fields (`minute hour day-of-month month day-of-week`, as crontab) or six
//!   (seconds first). Days of the week are crontab's in both: 0 or 7 Sunday, 1 Monday … 6
//!   Saturday, or names (`MON-FRI`). The `cron` crate parses them.
//! - **Daylight saving time.** The expression names wall-clock times in the schedule's zone.
//!   A time the clocks skip (02:30 on the night they go forward) runs once, at the instant the
//!   clocks jump to (03:00). A time the clocks repeat (02:30 on the night they go back) runs once,
//!   at its first occurrence; the repeated hour runs nothing again.
//! - **Jitter.** Each run is delayed by an offset in `[0, jitter)` drawn from a hash of the source
//!   and the job's names: the same every run and on every host, different between sources, so
//!   that a hundred sources on one bucket do not start together.
//! - **Missed runs.** Runs that fell due while nothing was watching (a sleeping laptop, a stopped
//!   agent) run once, not once each: [`Cron::due`] gives the newest of them.

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Timelike, Utc};
use sha2::{Digest, Sha256};

/// A cron expression in a zone.
#[derive(Debug, Clone)]
pub struct Cron {
    text: String,
    zone: chrono_tz::Tz,
    schedule: cron::Schedule,
}

impl PartialEq for Cron {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.zone == other.zone
    }
}

impl Cron {
    /// Parses a 5- or 6-field expression; the error says what is wrong with it.
    pub fn parse(text: &str, zone: chrono_tz::Tz) -> Result<Self, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(format!(
                    "{text:?} has {n} fields: a schedule has 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)"
                ))
            }
        };
        let weekday = weekdays(rest[4]).map_err(|e| format!("{text:?}: day of week: {e}"))?;
        let native = format!(
            "{seconds} {} {} {} {} {weekday}",
            rest[0], rest[1], rest[2], rest[3]
        );
        let schedule = cron::Schedule::from_str(&native)
            .map_err(|e| format!("{text:?} is not a cron expression: {e}"))?;
        Ok(Self {
            text: text.to_owned(),
            zone,
            schedule,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn zone(&self) -> chrono_tz::Tz {
        self.zone
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone).naive_local();
        // The expression is read on the wall clock: iterate wall-clock times (held as UTC, which
        // has no gaps), then place each in the zone.
        self.schedule
            .after(&Utc.from_utc_datetime(&local))
            .take(10_000)
            .map(|wall| self.instant(wall.naive_utc()))
            .find(|t| *t > after)
    }

    /// The next `n` runs after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut from = after;
        while out.len() < n {
            let Some(next) = self.next_after(from) else {
                break;
            };
            out.push(next);
            from = next;
        }
        out
    }

    /// The newest run due in `(last, now]`, if any: what a scheduler that last looked at `last`
    /// runs now, once, however many runs it slept through.
    pub fn due(&self, last: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut newest = None;
        let mut from = last;
        while let Some(next) = self.next_after(from).filter(|t| *t <= now) {
            newest = Some(next);
            from = next;
        }
        newest
    }

    /// A wall-clock time in the zone: the earlier of a repeated one, the jump's end for a
    /// skipped one.
    fn instant(&self, wall: NaiveDateTime) -> DateTime<Utc> {
        match self.zone.from_local_datetime(&wall) {
            chrono::LocalResult::Single(t) => t.to_utc(),
            chrono::LocalResult::Ambiguous(earlier, _) => earlier.to_utc(),
            chrono::LocalResult::None => {
                // The first whole wall-clock minute after the gap is where the clocks jumped to
                // (gaps begin and end on whole minutes in every zone).
                let mut probe = wall - Duration::seconds(i64::from(wall.second()));
                for _ in 0..(24 * 60) {
                    probe += Duration::minutes(1);
                    if let Some(t) = self.zone.from_local_datetime(&probe).earliest() {
                        return t.to_utc();
                    }
                }
                Utc.from_utc_datetime(&wall)
            }
        }
    }
}

/// Crontab's days of the week (0 or 7 Sunday, 1 Monday) as names, which the `cron` crate reads
/// the same whatever its own numbering.
fn weekdays(field: &str) -> Result<String, String> {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let name = |n: &str| -> Result<&'static str, String> {
        let i: usize = n
            .parse()
            .map_err(|_| format!("{n:?} is neither a day's number (0-7) nor its name"))?;
        NAMES
            .get(i)
            .copied()
            .ok_or_else(|| format!("{i} is not a day of the week (0-7, 0 and 7 are Sunday)"))
    };
    let numeric = |s: &str| s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty();
    let mut out = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let translated = match range.split_once('-') {
            Some((a, b)) if numeric(a) && numeric(b) => {
                let (from, to) = (name(a)?, name(b)?);
                // A range ending on 7 (Sunday) wraps past Saturday.
                if b == "7" && a != "0" && a != "7" {
                    if step.is_some() {
                        return Err(format!(
                            "{part:?}: a step over a range through 7: name the days"
                        ));
                    }
                    out.push(format!("{from}-SAT"));
                    out.push("SUN".into());
                    continue;
                }
                format!("{from}-{to}")
            }
            None if numeric(range) => name(range)?.to_owned(),
            _ => range.to_owned(),
        };
        out.push(match step {
            Some(s) => format!("{translated}/{s}"),
            None => translated,
        });
    }
    Ok(out.join(","))
}

/// The offset in `[0, jitter)` that delays every run of `job` of `source`: a hash of the two
/// names, whole seconds.
pub fn jitter_offset(source: &str, job: &str, jitter: std::time::Duration) -> Duration {
    let span = jitter.as_secs();
    if span == 0 {
        return Duration::zero();
    }
    let digest = Sha256::digest(format!("{source}\0{job}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    Duration::seconds((u64::from_be_bytes(first) % span) as i64)
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
