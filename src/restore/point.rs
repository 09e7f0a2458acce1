//! Where a restore stops: one type for every engine, read from the words a person types.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::Serialize;

use crate::position::{Gtid, Lsn};
use crate::repo::manifest::BackupId;

/// The instant, LSN, GTID, restore point or backup a restore recovers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum RestorePoint {
    /// Everything the repository holds.
    Latest,
    /// The state as of this instant: every transaction committed at or before it, none after.
    Time(Instant),
    /// PostgreSQL: just after this WAL location.
    Lsn(Lsn),
    /// MariaDB: up to and including this transaction.
    Gtid(Gtid),
    /// PostgreSQL: the restore point made with `pg_create_restore_point(name)`.
    Name(String),
    /// One backup, consistent and no further.
    Backup(BackupId),
}

/// An instant and the zone it was given in: plans print both, so what was understood is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Instant {
    pub at: DateTime<Utc>,
    #[serde(serialize_with = "zone_name")]
    pub zone: chrono_tz::Tz,
}

fn zone_name<S: serde::Serializer>(zone: &chrono_tz::Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(zone.name())
}

impl Instant {
    pub fn utc(at: DateTime<Utc>) -> Self {
        Self {
            at,
            zone: chrono_tz::UTC,
        }
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let utc = self.at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        if self.zone == chrono_tz::UTC {
            write!(f, "{utc}")
        } else {
            let local = self.at.with_timezone(&self.zone);
            write!(
                f,
                "{} {} ({utc})",
                local.format("%Y-%m-%d %H:%M:%S%.f"),
                self.zone
            )
        }
    }
}

impl RestorePoint {
    /// The short name of the kind of point, as the flag that asks for it.
    pub fn flag(&self) -> &'static str {
        match self {
            RestorePoint::Latest => "--latest",
            RestorePoint::Time(_) => "--time",
            RestorePoint::Lsn(_) => "--lsn",
            RestorePoint::Gtid(_) => "--gtid",
            RestorePoint::Name(_) => "--name",
            RestorePoint::Backup(_) => "--backup",
        }
    }

    /// The instant of a time point.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        match self {
            RestorePoint::Time(i) => Some(i.at),
            _ => None,
        }
    }
}

impl fmt::Display for RestorePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestorePoint::Latest => f.write_str("everything stored (--latest)"),
            RestorePoint::Time(i) => write!(f, "{i}"),
            RestorePoint::Lsn(lsn) => write!(f, "just after LSN {lsn}"),
            RestorePoint::Gtid(g) => write!(f, "just after transaction {g}"),
            RestorePoint::Name(n) => write!(f, "restore point {n:?}"),
            RestorePoint::Backup(id) => write!(f, "backup {id}, consistent"),
        }
    }
}

/// What a person may ask for: at most one of these is set.
#[derive(Debug, Clone, Default)]
pub struct PointWords<'a> {
    pub time: Option<&'a str>,
    pub zone: Option<chrono_tz::Tz>,
    pub latest: bool,
    pub lsn: Option<&'a str>,
    pub gtid: Option<&'a str>,
    pub name: Option<&'a str>,
    pub backup: Option<&'a str>,
}

impl PointWords<'_> {
    /// The point these words name; an error says what is wrong with them, for a usage error.
    pub fn point(&self) -> Result<RestorePoint, String> {
        let zone = self.zone.unwrap_or(chrono_tz::UTC);
        let mut points = Vec::new();
        if let Some(t) = self.time {
            points.push(RestorePoint::Time(Instant {
                at: parse_time(t, zone)?,
                zone,
            }));
        }
        if self.latest {
            points.push(RestorePoint::Latest);
        }
        if let Some(lsn) = self.lsn {
            points.push(RestorePoint::Lsn(lsn.parse()?));
        }
        if let Some(g) = self.gtid {
            points.push(RestorePoint::Gtid(g.parse()?));
        }
        if let Some(n) = self.name {
            if n.is_empty() {
                return Err("--name needs the restore point's name".into());
            }
            points.push(RestorePoint::Name(n.to_owned()));
        }
        if let Some(b) = self.backup {
            points.push(RestorePoint::Backup(b.parse()?));
        }
        match points.len() {
            1 => Ok(points.remove(0)),
            0 => Err("say where to stop: --time T, --latest, --backup ID, or --lsn L / --name N (PostgreSQL), --gtid G (MySQL/MariaDB)".into()),
            _ => Err(format!(
                "say where to stop once: {} were all given",
                points.iter().map(RestorePoint::flag).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

/// Reads `2026-11-20T14:03:00Z` or `2026-11-20T14:03:00+02:00` (RFC 3339), or a time without a zone
/// (`2026-11-20 14:03[:00[.5]]`) in the zone `tz` names (UTC, Europe/Berlin, ...).
pub fn parse_time(text: &str, tz: chrono_tz::Tz) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.to_utc());
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S%.f",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text.trim(), format) {
            return match tz.from_local_datetime(&naive) {
                chrono::LocalResult::Single(t) => Ok(t.to_utc()),
                chrono::LocalResult::Ambiguous(a, b) => Err(format!(
                    "{text:?} happens twice in {tz} (clocks went back): say which with an offset, {} or {}",
                    a.fixed_offset().to_rfc3339(),
                    b.fixed_offset().to_rfc3339()
                )),
                chrono::LocalResult::None => Err(format!("{text:?} does not exist in {tz} (clocks went forward)")),
            };
        }
    }
    Err(format!(
        "{text:?} is not a time: use RFC 3339 (2026-11-20T14:03:00Z) or 2026-11-20 14:03:00 (read in --tz, UTC by default)"
    ))
}

/// An IANA time zone name (`UTC`, `Europe/Berlin`).
pub fn parse_tz(text: &str) -> Result<chrono_tz::Tz, String> {
    text.parse().map_err(|_| {
        format!("{text:?} is not a time zone: use an IANA name such as UTC or Europe/Berlin")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        let utc = chrono_tz::UTC;
        let t = parse_time("2026-11-20T14:03:00Z", utc).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-20T14:03:00+00:00");
        assert_eq!(parse_time("2026-11-20T16:03:00+02:00", utc).unwrap(), t);
        assert_eq!(parse_time("2026-11-20 14:03", utc).unwrap(), t);
        assert_eq!(parse_time("2026-11-20 14:03:00", utc).unwrap(), t);
        assert!(parse_time("yesterday", utc).is_err());
    }

    #[test]
    fn times_without_a_zone_are_read_in_tz() {
        let berlin = parse_tz("Europe/Berlin").unwrap();
        // Winter: UTC+1.
        assert_eq!(
            parse_time("2026-11-20 15:03", berlin).unwrap().to_rfc3339(),
            "2026-11-20T14:03:00+00:00"
        );
        // An explicit offset wins over --tz.
        assert_eq!(
            parse_time("2026-11-20T14:03:00Z", berlin)
                .unwrap()
                .to_rfc3339(),
            "2026-11-20T14:03:00+00:00"
        );
        // 02:30 on the last Sunday of March does not exist there; on the last of October it happens twice.
        assert!(parse_time("2026-03-29 02:30", berlin)
            .unwrap_err()
            .contains("does not exist"));
        assert!(parse_time("2026-10-25 02:30", berlin)
            .unwrap_err()
            .contains("twice"));
        assert!(parse_tz("Mars/Olympus").is_err());
    }

    #[test]
    fn words_name_one_point_and_print_what_was_understood() {
        let berlin = parse_tz("Europe/Berlin").unwrap();
        let p = PointWords {
            time: Some("2026-11-20 15:03"),
            zone: Some(berlin),
            ..Default::default()
        }
        .point()
        .unwrap();
        assert_eq!(
            p.to_string(),
            "2026-11-20 15:03:00 Europe/Berlin (2026-11-20T14:03:00Z)"
        );
        let lsn = PointWords {
            lsn: Some("0/3000028"),
            ..Default::default()
        };
        assert_eq!(lsn.point().unwrap(), RestorePoint::Lsn(Lsn(0x300_0028)));
        let gtid = PointWords {
            gtid: Some("0-1-42"),
            ..Default::default()
        };
        assert!(matches!(gtid.point().unwrap(), RestorePoint::Gtid(g) if g.seq == 42));
        assert!(PointWords::default()
            .point()
            .unwrap_err()
            .contains("say where to stop"));
        let two = PointWords {
            latest: true,
            lsn: Some("0/1"),
            ..Default::default()
        };
        assert!(two.point().unwrap_err().contains("--latest, --lsn"));
        let bad = PointWords {
            lsn: Some("nonsense"),
            ..Default::default()
        };
        assert!(bad.point().unwrap_err().contains("nonsense"));
    }
}
