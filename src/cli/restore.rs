//! `restore`'s arguments and how they read times: one set for every engine.

use chrono::{DateTime, NaiveDateTime, Utc};
use clap::Args;
use heirloom_backup::repo::source::SourceName;

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The source to restore
    pub source: SourceName,
    /// A target from the config, or a data directory path
    #[arg(long = "to", value_name = "TARGET")]
    pub to: String,
    /// Recover to this instant: RFC 3339 (2026-11-20T14:03:00Z), or `YYYY-MM-DD HH:MM[:SS]` in --tz
    #[arg(long, value_name = "TIME", conflicts_with_all = ["latest", "backup"])]
    pub time: Option<String>,
    /// The time zone of a --time without one (an IANA name such as Europe/Berlin)
    #[arg(long, value_name = "ZONE", default_value = "UTC", value_parser = parse_tz)]
    pub tz: chrono_tz::Tz,
    /// Recover everything archived
    #[arg(long, conflicts_with = "backup")]
    pub latest: bool,
    /// PostgreSQL: recover to just after this WAL location (0/3000028)
    #[arg(long, value_name = "LSN", conflicts_with_all = ["time", "latest", "backup", "gtid", "name"])]
    pub lsn: Option<String>,
    /// PostgreSQL: recover to the restore point made with pg_create_restore_point(NAME)
    #[arg(long, value_name = "NAME", conflicts_with_all = ["time", "latest", "backup", "gtid"])]
    pub name: Option<String>,
    /// MySQL/MariaDB: replay up to and including this transaction (domain-server-sequence)
    #[arg(long, value_name = "GTID", conflicts_with_all = ["time", "latest", "backup"])]
    pub gtid: Option<String>,
    /// Restore this backup, consistent and no further
    #[arg(long, value_name = "ID")]
    pub backup: Option<String>,
    /// Print the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Replace the contents of a non-empty target directory
    #[arg(long)]
    pub force: bool,
    /// The port the restored server listens on (written to postgresql.auto.conf)
    #[arg(long)]
    pub port: Option<u16>,
    /// Start the restored server, wait until recovery ends, and check it runs
    #[arg(long)]
    pub start: bool,
    /// How long --start waits for recovery to end
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = heirloom_backup::store::parse_duration)]
    pub start_timeout: std::time::Duration,
    #[arg(long)]
    pub json: bool,
}

/// Reads `2026-11-20T14:03:00Z` or `2026-11-20T14:03:00+02:00` (RFC 3339), or a time without a zone
/// (`2026-11-20 14:03[:00[.5]]`) in the zone `tz` names (UTC, Europe/Berlin, ...).
pub fn parse_time(text: &str, tz: chrono_tz::Tz) -> Result<DateTime<Utc>, String> {
    use chrono::TimeZone;
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
}
