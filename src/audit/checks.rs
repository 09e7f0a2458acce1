//! The policy checks, judged from the facts the audit gathered and an instant: pure functions, no
//! store and no clock. Each check says what it was judged on, naming backups, instants and counts.

use crate::units::utc_seconds as t;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};

use super::windows::Window;
use super::{BackupAudit, Check, Drills, LogAudit, Verifies, VerifyEntry};
use crate::retention::policy::{Policy, Span};
use crate::retention::select::minus;

/// What one source's checks are judged on.
pub struct SourceFacts<'a> {
    pub at: DateTime<Utc>,
    pub policy: &'a Policy,
    /// The oldest backup the repository has held of the source (kept or pruned).
    pub first_backup: Option<DateTime<Utc>>,
    pub backups: &'a [BackupAudit],
    pub windows: &'a [Window],
    /// The point-in-time window as retention sees it: the first instant restorable, from which
    /// backup, against the one the policy asks for; `None` for a policy without a window.
    pub window: Option<&'a crate::retention::select::Window>,
    pub log: Option<&'a LogAudit>,
    pub drills: &'a Drills,
    /// Why the repository does not give the policy's immutability, if it does not.
    pub immutability_unmet: Option<&'a str>,
    /// The Object Lock the repository states.
    pub object_lock: Option<crate::repo::object_lock::ObjectLock>,
}

/// What each check asks, in one sentence, for a reader who has never seen the tool (the
/// reports end with these; docs/AUDIT.md says more).
pub const DEFINITIONS: &[(&str, &str)] = &[
    ("monthly-points", "each of the policy's last `keep.monthly` calendar months has a backup consistent in it, or a point-in-time window reaching into it; months before the source's first backup (kept, or recorded as pruned) are not asked, nor the current month until a backup is due in it"),
    ("window-continuous", "every instant from `now - point_in_time` (or from the first backup of a younger source) to the end of the log is restorable from one backup and the unbroken log after it"),
    ("backup-age", "the newest backup was consistent at most `audit.max_backup_age` (26h unless the policy says otherwise) before the audit's instant"),
    ("log-age", "the newest stored log (WAL as the store dates it, binlog by its last event) is at most `audit.max_log_age` old; without that limit the data-loss window is only reported"),
    ("immutability", "the Object Lock the repository's configuration states is at least the policy's `immutability`"),
    ("drill-recent", "a restore drill of the source (a real restore into a scratch server, started and checked) finished at most `audit.drill_within` ago"),
    ("drill-passed", "the newest drill of the source passed every check: a failed drill fails the audit until a later one passes"),
    ("encryption", "every object in the store is of a kind the format defines, and the format seals every kind that holds data or metadata with AES-256-GCM, with no unsealed variant; the evidence cites the newest verify, which opened the objects with authenticated decryption"),
    ("verify-recent", "a verify of the whole repository finished at most `audit.verify_within` ago and found no problem"),
];

/// Every check of one source, in a fixed order.
pub fn source_checks(f: &SourceFacts) -> Vec<Check> {
    vec![
        monthly_points(f),
        window_continuous(f),
        backup_age(f),
        log_age(f),
        immutability(f),
        drill_recent(f),
        drill_passed(f),
    ]
}

/// A span as a fixed length of time, to compare an age with.
pub fn span_length(span: Span) -> Duration {
    match span {
        Span::Hours(h) => Duration::hours(i64::from(h)),
        Span::Days(d) => Duration::days(i64::from(d)),
        Span::Weeks(w) => Duration::weeks(i64::from(w)),
    }
}

/// An age in words: `3d 2h`, `26h 5m`, `40s`.
pub fn age(d: Duration) -> String {
    let s = d.num_seconds();
    if s < 0 {
        return format!("in the future by {}", age(-d));
    }
    let (days, hours, minutes) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// The first instant of the calendar month `(year, month)` in `zone`.
fn month_start(zone: chrono_tz::Tz, year: i32, month: u32) -> DateTime<Utc> {
    let naive = NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default();
    zone.from_local_datetime(&naive)
        .earliest()
        .map_or_else(|| Utc.from_utc_datetime(&naive), |t| t.to_utc())
}

/// The month before `(year, month)`.
fn previous(year: i32, month: u32) -> (i32, u32) {
    if month == 1 {
        (year - 1, 12)
    } else {
        (year, month - 1)
    }
}

/// A restore point in each of the last `keep.monthly` calendar months: a backup consistent in
/// the month, or a window reaching into it. Months before the source's first backup are not
/// asked, nor the current month until a backup is due in it (`max_backup_age` after it began).
fn monthly_points(f: &SourceFacts) -> Check {
    let months = f.policy.keep.monthly;
    let title = format!("A restore point in each of the last {months} months");
    if months == 0 {
        return Check::not_asked(
            "monthly-points",
            "A restore point in each month",
            format!("policy {} keeps no monthly backups", f.policy.name),
        );
    }
    let zone = f.policy.zone;
    let Some(first) = f.first_backup else {
        return Check::new(
            "monthly-points",
            title,
            false,
            vec![
                "the repository holds no backup of the source, and no prune record names one"
                    .into(),
            ],
        );
    };
    let local = f.at.with_timezone(&zone);
    let (mut year, mut month) = (local.year(), local.month());
    let mut found = Vec::new();
    let mut missing = Vec::new();
    let mut asked = 0;
    let due = span_length(f.policy.audit.max_backup_age);
    for i in 0..months {
        let start = month_start(zone, year, month);
        let end = {
            let (ny, nm) = if month == 12 {
                (year + 1, 1)
            } else {
                (year, month + 1)
            };
            month_start(zone, ny, nm)
        };
        let label = format!("{year:04}-{month:02}");
        (year, month) = previous(year, month);
        if end <= first {
            break;
        }
        if i == 0 && f.at - start < due {
            continue;
        }
        asked += 1;
        let until = end.min(f.at + Duration::milliseconds(1));
        let backup = f
            .backups
            .iter()
            .rev()
            .find(|b| b.consistent_at >= start && b.consistent_at < until);
        let window = f.windows.iter().find(|w| w.from < until && w.to >= start);
        match (backup, window) {
            (Some(b), _) => found.push(format!(
                "{label}: backup {} (consistent {})",
                b.id,
                t(b.consistent_at)
            )),
            (None, Some(w)) => found.push(format!(
                "{label}: the point-in-time window {} .. {}",
                t(w.from),
                t(w.to)
            )),
            (None, None) => missing.push(label),
        }
    }
    let mut evidence = vec![format!(
        "{} of {asked} months asked have a restore point (the source's first backup is of {}; {} months of the policy's {months} are asked)",
        found.len(),
        t(first),
        asked
    )];
    evidence.extend(missing.iter().map(|m| {
        format!("{m}: no restore point: no backup consistent in it, no window reaching into it")
    }));
    evidence.extend(found);
    Check::new("monthly-points", title, missing.is_empty(), evidence)
}

/// The point-in-time window, continuous: every instant from `now - point_in_time` (or from the
/// source's first backup, for a younger source) restorable from one backup and the unbroken log
/// after it.
fn window_continuous(f: &SourceFacts) -> Check {
    let Some(span) = f.policy.point_in_time else {
        return Check::not_asked(
            "window-continuous",
            "The point-in-time window is continuous",
            format!("policy {} has no point-in-time window", f.policy.name),
        );
    };
    let title = format!("Any instant of the last {span} restorable");
    if f.log.is_none() {
        return Check::new(
            "window-continuous",
            title,
            false,
            vec!["the source has no log (stream backups only): only its backups' own instants can be restored".into()],
        );
    }
    let requested = minus(f.at, span, f.policy.zone);
    let asked_from = f.first_backup.map_or(requested, |b| b.max(requested));
    let mut evidence = vec![if asked_from > requested {
        format!(
            "asked from {} (the source's first backup; the policy's window begins {})",
            t(asked_from),
            t(requested)
        )
    } else {
        format!("asked from {} to {}", t(requested), t(f.at))
    }];
    let first = f.window.and_then(|w| w.first_restorable);
    let passed = match (first, f.window.and_then(|w| w.base.as_ref())) {
        (Some(first), Some(base)) => {
            evidence.push(format!(
                "restorable from {} on: backup {base} and the unbroken log after it",
                t(first)
            ));
            first <= asked_from
        }
        _ => {
            evidence.push(
                "no instant of the window is restorable: no backup replay can start from lies before an unbroken log to the present".into(),
            );
            false
        }
    };
    if let Some(log) = f.log {
        for g in &log.gaps {
            let inside = g.to.is_none_or(|to| to > asked_from);
            if inside {
                evidence.push(format!(
                    "gap {}{}: {} missing ({}), {}",
                    g.from.map(t).unwrap_or_else(|| "?".into()),
                    g.to.map(|x| format!(" .. {}", t(x))).unwrap_or_default(),
                    g.gap.missing,
                    format_args!("after {}, before {}", g.gap.after, g.gap.before),
                    g.gap.cause
                ));
            }
        }
    }
    Check::new("window-continuous", title, passed, evidence)
}

/// The newest backup is younger than the policy allows.
fn backup_age(f: &SourceFacts) -> Check {
    let limit = f.policy.audit.max_backup_age;
    let title = format!("The newest backup is at most {limit} old");
    let newest = f
        .backups
        .iter()
        .filter(|b| b.consistent_at <= f.at)
        .max_by_key(|b| b.consistent_at);
    match newest {
        None => Check::new(
            "backup-age",
            title,
            false,
            vec![format!(
                "no backup of the source is consistent by {}",
                t(f.at)
            )],
        ),
        Some(b) => {
            let old = f.at - b.consistent_at;
            Check::new(
                "backup-age",
                title,
                old <= span_length(limit),
                vec![format!(
                    "the newest backup, {} ({}), is {} old: consistent at {}",
                    b.id,
                    b.kind,
                    age(old),
                    t(b.consistent_at)
                )],
            )
        }
    }
}

/// The data-loss window: how old the newest stored log is.
fn log_age(f: &SourceFacts) -> Check {
    let newest = f.log.and_then(|l| l.newest.as_ref());
    let said = newest.map(|n| {
        format!(
            "the newest stored log, {}, is {} old ({})",
            n.object,
            age(Duration::seconds(n.age_seconds)),
            t(n.at)
        )
    });
    let Some(limit) = f.policy.audit.max_log_age else {
        return Check::not_asked(
            "log-age",
            "The data-loss window",
            said.unwrap_or_else(|| "the source has no stored log".into())
                + &format!("; policy {} sets no audit.max_log_age", f.policy.name),
        );
    };
    let title = format!("The newest stored log is at most {limit} old");
    match newest {
        None => Check::new(
            "log-age",
            title,
            false,
            vec!["the source has no stored log".into()],
        ),
        Some(n) => Check::new(
            "log-age",
            title,
            Duration::seconds(n.age_seconds) <= span_length(limit),
            said.into_iter().collect(),
        ),
    }
}

/// The bucket locks every object as long as the policy asks.
fn immutability(f: &SourceFacts) -> Check {
    let Some(asked) = f.policy.immutability.as_ref() else {
        return Check::not_asked(
            "immutability",
            "Objects are immutable",
            format!("policy {} asks for no Object Lock", f.policy.name),
        );
    };
    let title = format!("Every object locked: {asked}");
    match (f.immutability_unmet, f.object_lock) {
        (Some(why), _) => Check::new("immutability", title, false, vec![why.to_owned()]),
        (None, Some(lock)) => Check::new(
            "immutability",
            title,
            true,
            vec![format!(
                "repository.object_lock states the bucket's default retention is {lock}, at least the {asked} the policy asks; every object is written once and never replaced (FORMAT.md), so each is locked from its write"
            )],
        ),
        (None, None) => Check::new(
            "immutability",
            title,
            false,
            vec!["the repository states no Object Lock".into()],
        ),
    }
}

/// A drill of the source finished within the policy's `drill_within`.
fn drill_recent(f: &SourceFacts) -> Check {
    let within = f.policy.audit.drill_within;
    let title = format!("A restore drill within the last {within}");
    let newest = f.drills.history.iter().find(|d| d.finished <= f.at);
    match newest {
        None => Check::new(
            "drill-recent",
            title,
            false,
            vec!["no drill of the source is recorded".into()],
        ),
        Some(d) => {
            let old = f.at - d.finished;
            Check::new(
                "drill-recent",
                title,
                old <= span_length(within),
                vec![format!(
                    "the newest drill finished {} ago, at {} ({})",
                    age(old),
                    t(d.finished),
                    if d.passed { "passed" } else { "failed" }
                )],
            )
        }
    }
}

/// The newest drill of the source passed: a failed drill fails the audit until a later one
/// passes.
fn drill_passed(f: &SourceFacts) -> Check {
    let title = "The newest restore drill passed";
    let newest = f.drills.history.iter().find(|d| d.finished <= f.at);
    match newest {
        None => Check::new(
            "drill-passed",
            title,
            false,
            vec!["no drill of the source is recorded".into()],
        ),
        Some(d) => {
            let mut evidence = vec![format!(
                "the drill of {} restored {} from backup {}: {}",
                t(d.finished),
                d.point,
                d.backup.as_deref().unwrap_or("(none chosen)"),
                if d.passed {
                    format!(
                        "passed; up in {:.1} s, {} tables and {} rows checked",
                        d.restore_seconds, d.tables, d.rows
                    )
                } else {
                    format!(
                        "failed: {}",
                        d.failure.as_deref().unwrap_or("a check failed")
                    )
                }
            )];
            if let Some(last) = f.drills.last_passed.as_ref().filter(|_| !d.passed) {
                evidence.push(format!(
                    "the last drill that passed finished at {}",
                    t(last.finished)
                ));
            }
            Check::new("drill-passed", title, d.passed, evidence)
        }
    }
}

/// What the repository's checks are judged on.
pub struct RepositoryFacts<'a> {
    pub at: DateTime<Utc>,
    /// The strictest `verify_within` of the sources' policies.
    pub verify_within: Span,
    pub verifies: &'a Verifies,
    /// How many objects of each kind the listing found, by prefix, and any key of no kind the
    /// format defines.
    pub objects_by_kind: &'a [(String, u64, bool)],
    pub unknown_objects: &'a [String],
    pub format_version: u32,
}

/// The repository's checks: encryption and the newest verify.
pub fn repository_checks(f: &RepositoryFacts) -> Vec<Check> {
    vec![encryption(f), verify_recent(f)]
}

fn encryption(f: &RepositoryFacts) -> Check {
    let title = "Every object holding data or metadata is encrypted";
    let sealed: u64 = f.objects_by_kind.iter().filter(|k| k.2).map(|k| k.1).sum();
    let plain: Vec<String> = f
        .objects_by_kind
        .iter()
        .filter(|k| !k.2 && k.1 > 0)
        .map(|k| format!("{} {}", k.1, k.0))
        .collect();
    let mut evidence = vec![
        format!(
            "{sealed} objects are of kinds format version {} always seals (AES-256-GCM with keys derived from the repository's secret; FORMAT.md has no unsealed variant of them)",
            f.format_version
        ),
        format!(
            "the others hold no backed-up data: {} (heirloom.json: parameters; keys/: the secret wrapped by a key-encryption key; locks/: leases; binlog-seq/: empty claims)",
            if plain.is_empty() { "none".into() } else { plain.join(", ") }
        ),
    ];
    match &f.verifies.newest {
        Some(v) => evidence.push(format!(
            "the newest verify ({}) opened the repository's objects with authenticated decryption{}: {} problems",
            t(v.finished),
            v.read_data
                .as_deref()
                .map(|r| format!(", reading data back ({r})"))
                .unwrap_or_default(),
            v.problems
        )),
        None => evidence.push("no verify is recorded to have opened the objects".into()),
    }
    for key in f.unknown_objects.iter().take(10) {
        evidence.push(format!(
            "{key}: not an object the format defines, so not known to be sealed"
        ));
    }
    Check::new("encryption", title, f.unknown_objects.is_empty(), evidence)
}

fn verify_recent(f: &RepositoryFacts) -> Check {
    let within = f.verify_within;
    let title = format!("A verify within the last {within}, without problems");
    let newest = f.verifies.history.iter().find(|v| v.finished <= f.at);
    let Some(v) = newest else {
        return Check::new(
            "verify-recent",
            title,
            false,
            vec!["no verify is recorded".into()],
        );
    };
    let old = f.at - v.finished;
    let mut evidence = vec![describe_verify(v, old)];
    evidence.extend(v.first_problems.iter().cloned());
    match &f.verifies.last_full_read {
        Some(r) => evidence.push(format!(
            "every stored byte was last read back from {} to {} ({})",
            t(r.since),
            t(r.completed),
            r.how
        )),
        None => {
            evidence.push("no verify has read every stored byte back (verify --read-data)".into())
        }
    }
    Check::new(
        "verify-recent",
        title,
        old <= span_length(within) && v.problems == 0,
        evidence,
    )
}

fn describe_verify(v: &VerifyEntry, old: Duration) -> String {
    format!(
        "the newest verify finished {} ago, at {}: {} backups, {} packs ({} read back), {} log objects; {} problems",
        age(old),
        t(v.finished),
        v.backups,
        v.packs,
        v.packs_read,
        v.log_objects,
        v.problems
    )
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
