//! The point-in-time windows of a source: the spans of time every instant of which a restore can
//! reach, from a backup that replay starts from and the unbroken log after it.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::engine::LogCoverage;
use crate::jobs::backup_time;
use crate::repo::manifest::Manifest;

/// A span every instant of which is restorable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The log run it lies in: its first and last object, as their names say.
    pub first: String,
    pub last: String,
}

/// Each unbroken run of the log that a replayable backup (a physical PostgreSQL backup, any
/// MySQL/MariaDB one) becomes consistent in gives one window: from the earliest such backup's
/// consistency point to the run's last dated event (for WAL, the consistency point of the newest
/// backup in the run: WAL records no times the repository reads).
pub fn windows(coverage: &LogCoverage, manifests: &[&Manifest]) -> Vec<Window> {
    let starts: Vec<DateTime<Utc>> = manifests
        .iter()
        .filter(|m| {
            m.mysql.is_some()
                || m.postgres.is_some()
                    && m.kind == crate::repo::manifest::BackupKind::PostgresPhysical
        })
        .map(|m| backup_time(m))
        .collect();
    coverage
        .runs
        .iter()
        .filter_map(|run| {
            let (first, last) = (run.first_event?, run.last_event?);
            let from = starts
                .iter()
                .copied()
                .filter(|t| (first..=last).contains(t))
                .min()?;
            Some(Window {
                from,
                to: last,
                first: run.first.clone(),
                last: run.last.clone(),
            })
        })
        .collect()
}

/// An instant drawn uniformly from all of `windows` (a longer window is likelier), with the
/// window it came from; `None` without a window. `draw` is a number in `[0, 1)`.
pub fn instant_in(windows: &[Window], draw: f64) -> Option<(DateTime<Utc>, &Window)> {
    let total: i64 = windows
        .iter()
        .map(|w| (w.to - w.from).num_milliseconds().max(0))
        .sum();
    if total == 0 {
        return windows.first().map(|w| (w.from, w));
    }
    let mut left = ((total as f64) * draw.clamp(0.0, 1.0)) as i64;
    for w in windows {
        let length = (w.to - w.from).num_milliseconds().max(0);
        if left <= length {
            return Some((w.from + Duration::milliseconds(left), w));
        }
        left -= length;
    }
    windows.last().map(|w| (w.to, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn window(from: &str, to: &str) -> Window {
        Window {
            from: at(from),
            to: at(to),
            first: String::new(),
            last: String::new(),
        }
    }

    #[test]
    fn draws_land_inside_a_window_by_length() {
        let ws = [
            window("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"),
            window("2026-01-02T00:00:00Z", "2026-01-02T03:00:00Z"),
        ];
        assert_eq!(instant_in(&ws, 0.0).unwrap().0, at("2026-01-01T00:00:00Z"));
        // A quarter of the four hours is the end of the first window.
        assert_eq!(instant_in(&ws, 0.25).unwrap().0, at("2026-01-01T01:00:00Z"));
        assert_eq!(instant_in(&ws, 0.5).unwrap().0, at("2026-01-02T01:00:00Z"));
        let (t, w) = instant_in(&ws, 0.999_999_9).unwrap();
        assert!(t <= w.to && t >= w.from && w.from == at("2026-01-02T00:00:00Z"));
        assert_eq!(instant_in(&[], 0.5), None);
        let point = [window("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z")];
        assert_eq!(
            instant_in(&point, 0.7).unwrap().0,
            at("2026-01-01T00:00:00Z")
        );
    }
}
