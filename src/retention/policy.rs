//! A retention policy: what a source keeps, read from a YAML file in `policies/` (or any path).
//!
//! ```yaml
//! name: three-year
//! zone: UTC                 # the calendar the periods are counted in
//! point_in_time: 35d        # any instant of the last 35 days restorable
//! keep: { daily: 35, weekly: 13, monthly: 36, yearly: 3 }
//! min_age: 24h              # nothing younger is deleted, whatever the rules say
//! immutability: { mode: compliance, days: 30 }   # the bucket's default Object Lock retention
//! repack_threshold: 50      # percent of a pack's bytes dead at which prune repacks it
//! audit: { max_backup_age: 26h, verify_within: 7d, drill_within: 30d }   # what `audit` checks
//! ```
//!
//! The semantics are in `docs/RETENTION.md`; [`super::select`] applies them.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

/// Why a policy cannot be used, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("policy {file}: {field}: {why}")]
    Invalid {
        file: String,
        field: String,
        why: String,
    },
}

/// A span of calendar time: whole hours, days or weeks, counted in the policy's zone (a day is a
/// calendar day, 23 or 25 hours across a DST change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Hours(u32),
    Days(u32),
    Weeks(u32),
}

impl Span {
    pub fn is_zero(self) -> bool {
        matches!(self, Span::Hours(0) | Span::Days(0) | Span::Weeks(0))
    }
}

impl std::str::FromStr for Span {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let bad = || format!("{text:?} is not a span such as 24h, 35d or 2w");
        let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = t.split_at(split);
        let n: u32 = number.parse().map_err(|_| bad())?;
        match unit {
            "h" => Ok(Span::Hours(n)),
            "d" => Ok(Span::Days(n)),
            "w" => Ok(Span::Weeks(n)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Span::Hours(n) => write!(f, "{n}h"),
            Span::Days(n) => write!(f, "{n}d"),
            Span::Weeks(n) => write!(f, "{n}w"),
        }
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How many periods of each length keep one backup each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keep {
    /// The newest N backups, whatever their age.
    #[serde(default)]
    pub last: u32,
    #[serde(default)]
    pub hourly: u32,
    #[serde(default)]
    pub daily: u32,
    #[serde(default)]
    pub weekly: u32,
    #[serde(default)]
    pub monthly: u32,
    #[serde(default)]
    pub yearly: u32,
}

/// What a policy asks of the bucket: every object locked at least this long, at least this
/// bindingly (`immutability`); the repository's `object_lock` says what the bucket does.
pub type Immutability = crate::repo::object_lock::ObjectLock;

/// A retention policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub description: Option<String>,
    pub zone: chrono_tz::Tz,
    /// How far back any instant is restorable (backups and the logs after them).
    pub point_in_time: Option<Span>,
    pub keep: Keep,
    /// Nothing younger than this is deleted.
    pub min_age: Option<Span>,
    pub immutability: Option<Immutability>,
    /// The share of a pack's bytes (percent) that, once dead, has prune copy its live chunks into
    /// a new pack; `None`: the default, [`DEFAULT_REPACK_THRESHOLD`].
    pub repack_threshold: Option<f64>,
    /// What `audit` holds the source to beyond the rules: how fresh its backups, verifies and
    /// drills must be.
    pub audit: AuditLimits,
}

/// The ages `audit` allows, as a policy states them (`audit:`), else the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditLimits {
    /// The newest backup is at most this old (a daily schedule and two hours to run it).
    #[serde(default = "default_max_backup_age")]
    pub max_backup_age: Span,
    /// A verify of the repository finished at most this long ago.
    #[serde(default = "default_verify_within")]
    pub verify_within: Span,
    /// A drill of the source finished at most this long ago.
    #[serde(default = "default_drill_within")]
    pub drill_within: Span,
    /// The newest stored log (the data-loss window) is at most this old; `None`: reported, not
    /// checked (an idle database writes no log).
    #[serde(default)]
    pub max_log_age: Option<Span>,
}

fn default_max_backup_age() -> Span {
    Span::Hours(26)
}

fn default_verify_within() -> Span {
    Span::Days(7)
}

fn default_drill_within() -> Span {
    Span::Days(30)
}

impl Default for AuditLimits {
    fn default() -> Self {
        Self {
            max_backup_age: default_max_backup_age(),
            verify_within: default_verify_within(),
            drill_within: default_drill_within(),
            max_log_age: None,
        }
    }
}

/// The repack threshold (percent dead) of a policy that states none.
pub const DEFAULT_REPACK_THRESHOLD: f64 = 50.0;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    zone: Option<String>,
    #[serde(default)]
    point_in_time: Option<Span>,
    #[serde(default)]
    keep: Keep,
    #[serde(default)]
    min_age: Option<Span>,
    #[serde(default)]
    immutability: Option<Immutability>,
    #[serde(default)]
    repack_threshold: Option<f64>,
    #[serde(default)]
    audit: AuditLimits,
}

/// The policies this build ships (`policies/` at the project root), by name.
pub const SHIPPED: &[(&str, &str)] = &[
    ("three-year", include_str!("../../policies/three-year.yaml")),
    (
        "pitr-7-days",
        include_str!("../../policies/pitr-7-days.yaml"),
    ),
    (
        "seven-year-finance",
        include_str!("../../policies/seven-year-finance.yaml"),
    ),
];

/// The policy a source has when neither the config nor the command names one.
pub const DEFAULT_POLICY: &str = "three-year";

impl Policy {
    /// A shipped policy by name, or a policy file by path.
    pub fn named_or_file(name_or_path: &str) -> Result<Self, PolicyError> {
        if let Some((name, text)) = SHIPPED.iter().find(|(n, _)| *n == name_or_path) {
            return Self::parse(text, &format!("{name} (shipped)"));
        }
        let path = Path::new(name_or_path);
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            file: if path.exists() || name_or_path.contains('/') {
                path.display().to_string()
            } else {
                format!(
                    "{name_or_path} (neither a shipped policy, {}, nor a file)",
                    SHIPPED
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks policy text; `file` names it in messages.
    pub fn parse(text: &str, file: &str) -> Result<Self, PolicyError> {
        let invalid = |field: &str, why: String| PolicyError::Invalid {
            file: file.to_owned(),
            field: field.to_owned(),
            why,
        };
        let mut at: Option<(String, String)> = None;
        let parsed = serde_saphyr::with_deserializer_from_str(text, |de| {
            serde_path_to_error::deserialize::<_, RawPolicy>(de).map_err(|e| {
                at = Some((e.path().to_string(), e.inner().to_string()));
                <serde_saphyr::Error as serde::de::Error>::custom(e.inner().to_string())
            })
        });
        let raw = match (parsed, at) {
            (Ok(raw), _) => raw,
            (Err(_), Some((field, why))) => {
                let field = if field == "." {
                    "(top level)".into()
                } else {
                    field
                };
                let why = why.lines().next().unwrap_or_default().to_owned();
                return Err(invalid(&field, why));
            }
            (Err(e), None) => return Err(invalid("(syntax)", e.to_string())),
        };
        let zone = match &raw.zone {
            None => chrono_tz::UTC,
            Some(z) => z.parse().map_err(|_| {
                invalid(
                    "zone",
                    format!(
                        "{z:?} is not a time zone: use an IANA name such as UTC or Europe/Berlin"
                    ),
                )
            })?,
        };
        if raw.name.trim().is_empty() {
            return Err(invalid("name", "empty".into()));
        }
        let keep = raw.keep;
        let window = raw.point_in_time.filter(|s| !s.is_zero());
        if window.is_none()
            && [
                keep.last,
                keep.hourly,
                keep.daily,
                keep.weekly,
                keep.monthly,
                keep.yearly,
            ]
            .iter()
            .all(|n| *n == 0)
        {
            return Err(invalid(
                "keep",
                "the policy keeps nothing (every count is 0 and there is no point_in_time window): it would delete every backup; refused".into(),
            ));
        }
        if let Some(lock) = raw.immutability {
            if lock.days == 0 {
                return Err(invalid(
                    "immutability.days",
                    "0 days of retention is no lock: leave immutability out".into(),
                ));
            }
        }
        if let Some(t) = raw.repack_threshold {
            if !(t >= 0.0 && t.is_finite()) {
                return Err(invalid(
                    "repack_threshold",
                    format!("{t} is not a percentage: use 0 or more (above 100, never repack)"),
                ));
            }
        }
        Ok(Policy {
            name: raw.name,
            description: raw.description,
            zone,
            point_in_time: window,
            keep,
            min_age: raw.min_age.filter(|s| !s.is_zero()),
            immutability: raw.immutability,
            repack_threshold: raw.repack_threshold,
            audit: raw.audit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_policies_parse_and_say_what_they_keep() {
        for (name, text) in SHIPPED {
            let p = Policy::parse(text, name).unwrap();
            assert_eq!(&p.name, name);
        }
        let p = Policy::named_or_file(DEFAULT_POLICY).unwrap();
        assert_eq!(p.point_in_time, Some(Span::Days(35)));
        assert_eq!(
            (p.keep.daily, p.keep.weekly, p.keep.monthly, p.keep.yearly),
            (35, 13, 36, 3)
        );
        assert_eq!(p.zone, chrono_tz::UTC);
    }

    fn err(text: &str) -> String {
        Policy::parse(text, "p.yaml").unwrap_err().to_string()
    }

    #[test]
    fn bad_policies_are_refused_naming_the_field() {
        let e = err("name: x\nkeep: { daily: 7, fortnightly: 2 }\n");
        assert!(e.contains("keep") && e.contains("fortnightly"), "{e}");
        let e = err("name: x\nkeep: { daily: -1 }\n");
        assert!(e.contains("keep.daily"), "{e}");
        let e = err("name: x\nkeep: { daily: 0 }\n");
        assert!(e.contains("keeps nothing"), "{e}");
        let e = err("name: x\n");
        assert!(e.contains("keeps nothing"), "{e}");
        let e = err("name: x\npoint_in_time: 5 days\nkeep: { daily: 1 }\n");
        assert!(e.contains("point_in_time") && e.contains("35d"), "{e}");
        let e = err("name: x\nzone: Mars/Olympus\nkeep: { daily: 1 }\n");
        assert!(e.contains("zone") && e.contains("Mars"), "{e}");
        let e = err("name: x\nkeep: { daily: 1 }\nimmutability: { mode: forever, days: 3 }\n");
        assert!(e.contains("immutability.mode"), "{e}");
        let e = err("name: x\nkeep: { daily: 1 }\nrepack_threshold: -5\n");
        assert!(e.contains("repack_threshold") && e.contains("-5"), "{e}");
        let e = err("name: x\nkeep: { daily: 1 }\nrepack_threshold: half\n");
        assert!(e.contains("repack_threshold"), "{e}");
        let p = Policy::parse("name: r\nkeep: { daily: 1 }\nrepack_threshold: 80\n", "x").unwrap();
        assert_eq!(p.repack_threshold, Some(80.0));
        let e = err("keep: { daily: 1 }\n");
        assert!(e.contains("name"), "{e}");
        let e = Policy::named_or_file("no-such-policy")
            .unwrap_err()
            .to_string();
        assert!(e.contains("three-year"), "{e}");
        let p = Policy::parse(
            "name: a\nkeep: { daily: 1 }\naudit: { max_backup_age: 8d, max_log_age: 1h }\n",
            "x",
        )
        .unwrap();
        assert_eq!(p.audit.max_backup_age, Span::Days(8));
        assert_eq!(p.audit.max_log_age, Some(Span::Hours(1)));
        assert_eq!(p.audit.drill_within, Span::Days(30));
        let e = err("name: x\nkeep: { daily: 1 }\naudit: { drill_every: 7d }\n");
        assert!(e.contains("audit") && e.contains("drill_every"), "{e}");
        // A window alone is a policy.
        let p = Policy::parse("name: w\npoint_in_time: 7d\n", "x").unwrap();
        assert_eq!(p.point_in_time, Some(Span::Days(7)));
    }
}
